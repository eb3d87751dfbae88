package dedupe

import (
	"fmt"
	"strconv"
)

// parseLetterState reads a non-empty Accepted or Done value in letter form,
// "a" or "d" followed by an optional fencing number ("a", "a3", "d3"): the
// KV backend's values, and the Redis backend's before its integer form. It
// returns an error for any other value.
func parseLetterState(v string) (State, int64, error) {
	var s State
	switch v[0] {
	case 'a':
		s = Accepted
	case 'd':
		s = Done
	default:
		return Absent, 0, fmt.Errorf("unknown state value %q", v)
	}
	if len(v) == 1 {
		return s, 0, nil
	}
	n, err := strconv.ParseInt(v[1:], 10, 64)
	if err != nil || n < 0 || v[1] == '+' {
		return Absent, 0, fmt.Errorf("unknown state value %q", v)
	}
	return s, n, nil
}
