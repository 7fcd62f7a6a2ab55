"""Pipeline components: each takes a config entity (and upstream artifacts) and returns an artifact entity."""
