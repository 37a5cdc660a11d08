"""Building and loading base models: hub ids, local directories, the tiny model built here."""
