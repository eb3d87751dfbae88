package dedupe

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The names and values of the Redis backend; the layout is documented on
// Redis.

// redisLockSuffix ends every lock name.
const redisLockSuffix = ":l"

// redisPendingValue is the value a claim writes: p:<owner>:<unix ms>.
func redisPendingValue(owner string, now time.Time) string {
	return "p:" + owner + ":" + strconv.FormatInt(now.UnixMilli(), 10)
}

// redisIsPending reports whether v is a pending value.
func redisIsPending(v string) bool { return strings.HasPrefix(v, "p:") }

// The last digit of an Accepted or Done value, which is one decimal integer:
// 10 × the last fencing number issued + the digit.
const (
	redisAcceptedDigit = 1
	redisDoneDigit     = 2
)

// parseRedisValue reads a state value: its state and fencing number. It also
// reads the values written before states were integers: "a", "a<fence>" and
// "d<fence>".
func parseRedisValue(v string) (State, int64, error) {
	if redisIsPending(v) {
		return Pending, 0, nil
	}
	if v == "" {
		return Absent, 0, fmt.Errorf("empty state value")
	}
	if v[0] >= '0' && v[0] <= '9' {
		// The scripts read it as a Lua number: exact below 2^53.
		n, err := strconv.ParseUint(v, 10, 53)
		if err != nil {
			return Absent, 0, fmt.Errorf("unknown state value %q", v)
		}
		switch n % 10 {
		case redisAcceptedDigit:
			return Accepted, int64(n / 10), nil
		case redisDoneDigit:
			return Done, int64(n / 10), nil
		}
		return Absent, 0, fmt.Errorf("unknown state value %q", v)
	}
	return parseLetterState(v)
}

// hasHashTag reports whether Redis Cluster hashes only part of name: it holds
// a '{' followed later by a '}' with at least one byte between them.
func hasHashTag(name string) bool {
	open := strings.IndexByte(name, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(name[open+1:], '}')
	return end > 0
}

// names returns the state and lock key names of key, both in one Cluster
// slot, or ErrInvalidKey.
func (r *Redis) names(key string) (state, lock string, err error) {
	if key == "" {
		return "", "", fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	state = r.prefix + key
	switch {
	case hasHashTag(state):
		return state, state + redisLockSuffix, nil
	case !strings.Contains(state, "}"):
		return state, "{" + state + "}" + redisLockSuffix, nil
	}
	return "", "", fmt.Errorf("%w: %q holds '}' but no hash tag", ErrInvalidKey, state)
}
