"""One module per family. The registry imports every module here on its first lookup
(files starting with ``_`` are shared helpers, not families): adding a family is
adding a file."""
