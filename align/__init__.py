"""Align stage: dlib face detection, 68 landmarks, FFHQ crop with an exact inverse."""
