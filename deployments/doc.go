// Package deployments holds what it takes to run wagate outside a Go
// program: the container image (Dockerfile), a compose file for one machine,
// Kubernetes manifests (kustomize base, production overlay and components),
// Prometheus alert rules and a Grafana dashboard.
//
// It has no Go API. Its tests validate every file offline, as part of
// `make test`: the Kubernetes manifests are built with kustomize and each
// object is decoded strictly into the official API types (an unknown or
// misspelt field fails), then checked against wagate's configuration (every
// WAGATE_* variable exists and parses, ports, shutdown timeouts, stream and
// consumer names); the compose file is loaded with the Compose
// specification's own loader and schema; every PromQL expression of the alert
// rules and the dashboard is parsed and may only name metrics and labels that
// the ingress, the worker or prometheus-nats-exporter export.
package deployments
