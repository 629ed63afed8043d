"""The survey and where it comes from: the Survey type, the data loaders (a registry), the
evaluation protocols and splits, and pseudonyms."""
