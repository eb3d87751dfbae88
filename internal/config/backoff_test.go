package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
)

func TestLoadBackOff(t *testing.T) {
	t.Setenv("WAGATE_BACKOFF", "100ms,1s,1m")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{100 * time.Millisecond, time.Second, time.Minute}
	if len(c.BackOff) != len(want) {
		t.Fatalf("BackOff %v, want %v", c.BackOff, want)
	}
	for i := range want {
		if c.BackOff[i] != want[i] {
			t.Errorf("BackOff[%d] = %v, want %v", i, c.BackOff[i], want[i])
		}
	}
	if got := connect.Streams(c).BackOff; len(got) != 3 || got[2] != time.Minute {
		t.Errorf("streams BackOff %v, want %v", got, want)
	}

	t.Setenv("WAGATE_BACKOFF", "")
	if c, err := config.Load(); err != nil || len(c.BackOff) != 0 {
		t.Errorf("empty WAGATE_BACKOFF: %v, %v; want none (the streams default)", c.BackOff, err)
	}
	for _, bad := range []string{"1s,0s", "-1s", "soon"} {
		t.Setenv("WAGATE_BACKOFF", bad)
		if _, err := config.Load(); err == nil || !strings.Contains(strings.ToUpper(err.Error()), "BACKOFF") {
			t.Errorf("WAGATE_BACKOFF=%q: %v, want an error naming it", bad, err)
		}
	}
}
