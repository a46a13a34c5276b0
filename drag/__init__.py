"""Drag stage: DragGAN motion supervision and point tracking."""
