"""The store's schema revisions, oldest first; each file is named after its revision id."""
