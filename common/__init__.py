"""The ground floor: errors, file and image IO, geometry, the run folder, settings.

Every other package may import it; it imports nothing of the project.
"""
