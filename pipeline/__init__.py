"""The top floor: runs the stages (edit), composites the result, edit recipes, the web editor.

It imports the stages and the ground package `common`; nothing below imports it.
"""
