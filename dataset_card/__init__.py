"""Dataset card and model card: Jinja templates (templates/) and their rendering (render.py)."""
