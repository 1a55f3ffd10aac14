"""The analyst workbench: a snapshot of scored accounts (their prompts, clusters, neighbours and
coordination components) built once, then queried by `distillguard inspect`, `neighbours`,
`campaigns` and the `/ui` pages."""
