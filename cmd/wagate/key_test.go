package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

func TestResolveKey(t *testing.T) {
	const wamid = "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBQzQUI="
	key := messages.KeyOf("x")
	for _, c := range []struct {
		name     string
		arg      string
		ref      eventRef
		identity string // "" with wantErr
		wantErr  string
	}{
		{"a key", key, eventRef{}, "", ""},
		{"a key, account ignored", key, eventRef{account: "1"}, "", ""},
		{"message", wamid, eventRef{kind: "message", account: "106"}, "cloud|message|106|messages|" + wamid, ""},
		{"echo", wamid, eventRef{kind: "message", account: "106", field: "smb_message_echoes"}, "cloud|message|106|smb_message_echoes|" + wamid, ""},
		{"status", wamid, eventRef{kind: "status", account: "106", second: "read"}, "cloud|status|106|messages|" + wamid + "|read", ""},
		{"group status", wamid, eventRef{kind: "status", account: "106", second: "read", participant: "16505550001"}, "cloud|status|106|messages|" + wamid + "|read|16505550001", ""},
		{"call", "wacid.ABC", eventRef{kind: "call", account: "106", second: "connect"}, "cloud|call|106|calls|wacid.ABC|event|connect", ""},
		{"call status", "wacid.ABC", eventRef{kind: "call", account: "106", second: "RINGING"}, "cloud|call|106|calls|wacid.ABC|status|RINGING", ""},
		{"separator escaped", "a|b", eventRef{kind: "message", account: "106"}, "cloud|message|106|messages|a%7Cb", ""},
		{"participant of a message", wamid, eventRef{kind: "message", account: "106", participant: "1"}, "", "applies to --kind status"},
		{"no account", wamid, eventRef{kind: "message"}, "", "needs --account"},
		{"status without value", wamid, eventRef{kind: "status", account: "106"}, "", "needs --status"},
		{"message with status", wamid, eventRef{kind: "message", account: "106", second: "read"}, "", "not message"},
		{"kind without id", wamid, eventRef{kind: "field", account: "106"}, "", "want message, status or call"},
		{"short key", "wa:abc", eventRef{}, "", "not a dedupe key"},
		{"empty", " ", eventRef{}, "", "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, id, err := resolveKey(c.arg, c.ref)
			if c.wantErr != "" {
				if !errorContains(err, c.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := key
			if c.identity != "" {
				want = messages.KeyOf(c.identity)
			}
			if k != want || id != c.identity {
				t.Errorf("got %s (%q), want %s (%q)", k, id, want, c.identity)
			}
		})
	}
}

func TestKeyCommand(t *testing.T) {
	e := newOpsEnv(t, false)
	ev := e.event(messages.KindStatus)
	out := e.mustWagate("key", ev.Key)
	if !strings.Contains(out, "state    absent\n") {
		t.Errorf("unseen key:\n%s", out)
	}
	fence := e.done(ev.Key)
	out = e.mustWagate("key", ev.ID, "--account", testAccount, "--kind", "status", "--status", "read")
	for _, want := range []string{
		"identity " + ev.Identity + "\n",
		"key      " + ev.Key + "\n",
		"state    done\n",
		"fence    1\n",
		"locked   false\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("key lacks %q:\n%s", want, out)
		}
	}
	if fence != 1 {
		t.Errorf("first fence %d", fence)
	}
	l, err := e.store.Begin(e.ctx(), ev.Key, dedupe.BeginOptions{TTL: time.Minute, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	out = e.mustWagate("key", ev.Key)
	if !strings.Contains(out, "locked   true\n") || !strings.Contains(out, "fence    2\n") {
		t.Errorf("locked key:\n%s", out)
	}
	_ = e.store.Unlock(e.ctx(), l)
	if _, err := e.wagate("key", ev.ID, "--account", testAccount, "--kind", "status"); !errorContains(err, "needs --status") {
		t.Errorf("status without --status: %v", err)
	}
}

// `wagate key` only looks: run from an operator's shell whose WAGATE_*
// variables differ from production's (here, the default 7-day horizon
// against a 14-day one), it must not rewrite the live buckets, which would
// shorten every key's dedupe horizon (G2) for the whole deployment.
func TestKeyDoesNotRewriteTheBuckets(t *testing.T) {
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const horizon = 14 * 24 * time.Hour
	store, err := dedupe.NewKV(ctx, js, dedupe.KVOptions{Horizon: horizon})
	if err != nil {
		t.Fatal(err)
	}
	key := messages.KeyOf("cloud|message|100000000000001|wamid.KEY1")
	if _, err := store.Claim(ctx, "test", []string{key}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("WAGATE_DEDUPE_BACKEND", "nats")
	t.Setenv("WAGATE_NATS_URL", n.ClientURL())
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"key", key})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("wagate key: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "pending") {
		t.Errorf("wagate key output lacks the state:\n%s", out.String())
	}
	for _, bucket := range []string{dedupe.DefaultKVBucket, dedupe.DefaultKVBucket + "_lock"} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != horizon {
			t.Errorf("bucket %s: TTL %v after wagate key, want %v as production set it", bucket, st.TTL(), horizon)
		}
	}
}
