package dedupe

import (
	"errors"
	"testing"
	"time"
)

func TestRedisNames(t *testing.T) {
	for _, tc := range []struct {
		prefix, key, state, lock string
	}{
		{"", "wa:AbC-_09AbC-_09AbC-_0", "wa:AbC-_09AbC-_09AbC-_0", "{wa:AbC-_09AbC-_09AbC-_0}:l"},
		{"wg:", "wa:x", "wg:wa:x", "{wg:wa:x}:l"},
		{"{wg}:", "wa:x", "{wg}:wa:x", "{wg}:wa:x:l"},
		{"", "user:{42}:evt", "user:{42}:evt", "user:{42}:evt:l"},
		{"", "{a}{b}", "{a}{b}", "{a}{b}:l"},
		{"", "a{b", "a{b", "{a{b}:l"},
		{"", "{", "{", "{{}:l"},
		{"", "}{a}", "}{a}", "}{a}:l"},
	} {
		r := NewRedis(nil, RedisOptions{Prefix: tc.prefix})
		state, lock, err := r.names(tc.key)
		if err != nil || state != tc.state || lock != tc.lock {
			t.Errorf("names(%q, prefix %q) = %q, %q, %v; want %q, %q", tc.key, tc.prefix, state, lock, err, tc.state, tc.lock)
		}
	}
	for _, key := range []string{"", "a}b", "a{}b", "}", "{}", "x}{}"} {
		r := NewRedis(nil, RedisOptions{})
		if s, l, err := r.names(key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("names(%q) = %q, %q, %v; want ErrInvalidKey", key, s, l, err)
		}
	}
}

func TestParseRedisValue(t *testing.T) {
	for _, tc := range []struct {
		v     string
		state State
		fence int64
		ok    bool
	}{
		{"p:ingress-1:1700000000000", Pending, 0, true},
		{"p:", Pending, 0, true},
		{"1", Accepted, 0, true},
		{"11", Accepted, 1, true},
		{"2", Done, 0, true},
		{"32", Done, 3, true},
		{"99992", Done, 9999, true},
		{"9007199254740991", Accepted, 900719925474099, true},
		{"9007199254740992", Absent, 0, false}, // 2^53: beyond the scripts' numbers
		{"0", Absent, 0, false},
		{"10", Absent, 0, false},
		{"13", Absent, 0, false},
		{"1a", Absent, 0, false},
		{"-11", Absent, 0, false},
		{"99999999999999999991", Absent, 0, false},
		// Written before states were integers.
		{"a", Accepted, 0, true},
		{"a1", Accepted, 1, true},
		{"a9007199254740991", Accepted, 9007199254740991, true},
		{"d", Done, 0, true},
		{"d42", Done, 42, true},
		{"", Absent, 0, false},
		{"p", Absent, 0, false},
		{"a-1", Absent, 0, false},
		{"a+1", Absent, 0, false},
		{"ax", Absent, 0, false},
		{"done", Absent, 0, false},
		{"x1", Absent, 0, false},
	} {
		s, f, err := parseRedisValue(tc.v)
		if (err == nil) != tc.ok || s != tc.state || f != tc.fence {
			t.Errorf("parseRedisValue(%q) = %v, %d, %v; want %v, %d, ok=%v", tc.v, s, f, err, tc.state, tc.fence, tc.ok)
		}
	}
}

func TestRedisOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		ms       string
	}{
		{0, 168 * time.Hour, "604800000"},
		{-time.Second, 168 * time.Hour, "604800000"},
		{1500 * time.Millisecond, 1500 * time.Millisecond, "1500"},
		{time.Microsecond, time.Millisecond, "1"},
		{1001 * time.Microsecond, 2 * time.Millisecond, "2"},
	} {
		r := NewRedis(nil, RedisOptions{Horizon: tc.in})
		if r.horizon != tc.want || r.horizonMs != tc.ms {
			t.Errorf("Horizon %v: %v (%s ms), want %v (%s ms)", tc.in, r.horizon, r.horizonMs, tc.want, tc.ms)
		}
	}
}
