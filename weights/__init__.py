"""StyleGAN2 generator (pure PyTorch, NVIDIA's names), safe checkpoint loading, weights registry."""
