"""Frame, request file or table -> request lines: templates, cells, request plans, request files, SQL."""
