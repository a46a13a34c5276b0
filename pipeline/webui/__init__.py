"""Local web editor: click points on the photo, watch the drag (run with `photodrag serve`)."""
