// Package chaos is wagate's fault-injection suite. Its tests (chaos_test.go)
// run the real ingress and worker binaries as separate processes against a
// real redis-server and real nats-server processes that the suite starts,
// kills and restarts itself, while a provider simulator (provider.go) posts
// signed webhooks the way Meta does and a sink (sink.go) receives the
// worker's forwards. After each scenario the ledger (ledger.go) checks the
// guarantees of design G1–G3 from what the provider was answered, what the
// sink recorded, what JetStream stored and what Redis executed (monitor.go).
//
// make chaos runs every scenario with long traffic and prints one table row
// per scenario; make test runs a short subset (see chaos_test.go).
//
// Faults inside the processes come from internal/failpoint
// (WAGATE_FAILPOINTS); faults from outside are kill -9 of a process, a
// server stopped and restarted, a lock deleted under a running handler.
package chaos
