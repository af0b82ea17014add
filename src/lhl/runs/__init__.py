"""A lifelong run's folder as data, below the engine that writes it and the reporting and tools
that read it: the layout and every file name (`folder`), the run's identity and folder name
(`identity`), its results matrix (`results`) and its status (`status`)."""
