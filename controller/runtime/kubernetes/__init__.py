"""The Kubernetes runtime: manifests rendered from a release, applied through the official client."""
