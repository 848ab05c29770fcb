"""The Kubernetes runtime: manifests rendered from a release, applied through the official client.

runtime.KubernetesRuntime is the Runtime; manifests/meta/pods render objects (pure),
client talks to the API, oneoff runs build/release/run pods, logstream relays container
logs live, rollout watches Deployments, templates keeps pod templates a release does not
change, prune names what a release leaves behind.
"""
