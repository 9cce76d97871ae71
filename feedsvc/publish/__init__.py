"""Stage 3, publish: entries and state to an immutable `Snapshot` of documents. The `publisher`
facade runs each batch through its parts; the document `registry` declares every feed format
(`formats/`), and `snapshot` compresses and tags the bytes. Imports nothing of serve."""
