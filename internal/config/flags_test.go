package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/wagate/wagate/worker"
)

// TestErrorsNameTheSetting checks that every kind of configuration error
// names the variable, its flag, the bad value and what is accepted, and
// never a Go field name.
func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(Config) error
		want  []string
	}{
		{"bad duration", map[string]string{"WAGATE_DEDUPE_HORIZON": "7days"}, nil,
			[]string{"WAGATE_DEDUPE_HORIZON", "--dedupe-horizon", `"7days"`, "Go duration"}},
		{"bad durations", map[string]string{"WAGATE_BACKOFF": "1s,soon"}, nil,
			[]string{"WAGATE_BACKOFF", "--backoff", `"1s,soon"`, "comma-separated Go durations"}},
		{"bad int", map[string]string{"WAGATE_MAX_DELIVER": "ten"}, nil,
			[]string{"WAGATE_MAX_DELIVER", "--max-deliver", `"ten"`, "whole number"}},
		{"bad bool", map[string]string{"WAGATE_INSECURE_NO_SIGNATURE": "maybe"}, nil,
			[]string{"WAGATE_INSECURE_NO_SIGNATURE", "--insecure-no-signature", `"maybe"`, "true or false"}},
		{"bad choice", map[string]string{"WAGATE_REDIS_POLICY": "open"}, nil,
			[]string{"WAGATE_REDIS_POLICY", "--redis-policy", `"open"`, "fail-open, fail-closed"}},
		{"out of range", map[string]string{"WAGATE_LOCK_TTL": "-5s"}, nil,
			[]string{"WAGATE_LOCK_TTL", "--lock-ttl", "-5s", "> 0"}},
		{"over a bound", map[string]string{"WAGATE_WORKER_CONCURRENCY": "8", "WAGATE_WORKER_PREFETCH": "1000000000"}, nil,
			[]string{"WAGATE_WORKER_CONCURRENCY", "--worker-concurrency", "WAGATE_WORKER_PREFETCH", "--worker-prefetch", "1000000000", "at most 10000"}},
		{"forward without url", map[string]string{"WAGATE_HANDLER": "forward"}, nil,
			[]string{"WAGATE_HANDLER", "--handler", "WAGATE_FORWARD_URL", "--forward-url"}},
		{"missing handler", nil, Config.CheckWorker,
			[]string{"WAGATE_HANDLER", "--handler", "not set", "forward", "log"}},
		{"missing secret", nil, Config.CheckIngress,
			[]string{"WAGATE_META_APP_SECRET", "--meta-app-secret", "WAGATE_INSECURE_NO_SIGNATURE", "--insecure-no-signature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range Vars() {
				t.Setenv(v.Env, v.Default)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Load()
			if tc.check != nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				err = tc.check(c)
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, field := range []string{"DedupeHorizon", "BackOff", "MaxDeliver", "InsecureNoSecret", "RedisPolicy", "LockTTL", "Insecure to", "field"} {
				if strings.Contains(msg, field) {
					t.Errorf("error %q names Go field %q", msg, field)
				}
			}
		})
	}
}

// TestNoHandlerDefault checks that a worker's handler must be chosen: the
// variable has no default, and an empty one fails CheckWorker.
func TestNoHandlerDefault(t *testing.T) {
	for _, v := range Vars() {
		if v.Env == Prefix+"HANDLER" && v.Default != "" {
			t.Fatalf("WAGATE_HANDLER defaults to %q: a worker started without it would run that handler", v.Default)
		}
	}
	for _, h := range []string{"forward", "log"} {
		if err := (Config{Handler: h}).CheckWorker(); err != nil {
			t.Errorf("handler %s: %v", h, err)
		}
	}
}

// TestFlagsOverrideVariables checks that every variable has a flag, and that
// a flag given on the command line wins over its variable while one not given
// leaves the variable in force.
func TestFlagsOverrideVariables(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	for _, v := range Vars() {
		if fs.Lookup(v.Flag) == nil {
			t.Errorf("%s has no flag --%s", v.Env, v.Flag)
		}
		t.Setenv(v.Env, v.Default) // restored after the test, as ApplyFlags sets them
	}
	t.Setenv("WAGATE_REDIS_URL", "redis://from-env:6379/0")
	t.Setenv("WAGATE_MAX_DELIVER", "3")
	if err := fs.Parse([]string{"--redis-url", "redis://from-flag:6379/1", "--dedupe-horizon=48h", "--insecure-no-signature"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyFlags(fs); err != nil {
		t.Fatal(err)
	}
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "redis://from-flag:6379/1" || c.DedupeHorizon.Hours() != 48 || !c.InsecureNoSecret {
		t.Errorf("flags not applied: redis %q horizon %s insecure %t", c.RedisURL, c.DedupeHorizon, c.InsecureNoSecret)
	}
	if c.MaxDeliver != 3 {
		t.Errorf("WAGATE_MAX_DELIVER=3 without its flag: got %d", c.MaxDeliver)
	}
}

// TestMaxWorkerHeldIsTheWorkers checks that the bound Load puts on a
// worker's concurrency and prefetch is the one worker.New enforces.
func TestMaxWorkerHeldIsTheWorkers(t *testing.T) {
	if MaxWorkerHeld != worker.MaxHeld {
		t.Fatalf("MaxWorkerHeld %d, worker.MaxHeld %d", MaxWorkerHeld, worker.MaxHeld)
	}
}
