"""Raw talking-face videos -> WebDataset shards with cached features (DESIGN sections 2-5)."""
