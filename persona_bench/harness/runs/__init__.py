"""A run on disk: its configuration (RunConfig), its typed record (RunRecord), the runs folder
(store) and the named presets."""
