"""Stage 1, ingest: the seeds folder to parsed entries. Which names are seeds and reading them
safely (`source`), watching the folder (`watcher`), what each file holds now (`catalog`), and
the pure parsing of a seed's bytes (`parser`, `frontmatter`, `dates`, `markdown`, `slugs`,
`seedrules`); `authoring` writes new seeds for `feedsvc new`. Imports no later stage."""
