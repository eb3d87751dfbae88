// Package dedupe holds the claim and lock state machine of wagate (design §4):
// the ingress claims each event's key before publishing it, and the worker
// takes a lock with a fencing number before running business logic, then marks
// the key done.
//
// States of a key, kept for the dedupe horizon:
//
//	absent              never seen, or expired
//	Pending  (p:…)      claimed by an ingress, publish in flight
//	Accepted (a…)       stored in JetStream
//	Done     (d…)       processed; final
//
// Store is the interface. Redis (NewRedis; single node, Sentinel or Cluster) is
// the default production backend; KV (NewKV) keeps the same states in NATS
// JetStream key-value buckets, for the one-process `wagate dev` and for
// operators who want one fewer moving part; Postgres (NewPostgres) keeps them
// in one PostgreSQL table, and DynamoDB (NewDynamoDB) in one DynamoDB table,
// for deployments that already run those. Every backend passes the contract
// suite in package dedupetest.
//
// A backend may also implement Batch (BeginBatch, FinishBatch), with which
// the worker begins and finishes the runs of many keys in one round trip;
// BeginAll and FinishAll use it when it is there, and one call per key,
// concurrently, when it is not. Redis and KV implement it; Postgres and
// DynamoDB do not yet (one statement or request per key, concurrently).
//
// A backend may implement ClaimAccepter, with which the ingress writes the
// accepted marks of the requests it answered in the same round trip as the
// claims of the requests waiting; ClaimAndAccept uses it when it is there,
// and Accept and Claim, concurrently, when it is not. Redis implements it.
package dedupe
