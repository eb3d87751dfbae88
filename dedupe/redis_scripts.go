package dedupe

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts of the Redis backend. Each touches one event's state key
// (KEYS[1]) and, where it needs it, its lock key (KEYS[2]); both lie in one
// Cluster slot (see names). Each runs atomically on the server.

// luaParse reads a state value as parseRedisValue does: it returns the mark
// ('p', 'a' or 'd') and the fencing number, 'absent' and 0 for no value, or
// nil for a value that is not a state. Accepted and Done are the integer
// 10 × fence + 1 or 2; "a<fence>" and "d<fence>" were written before.
const luaParse = `
local function parse(v)
  if not v then return 'absent', 0 end
  if string.sub(v, 1, 2) == 'p:' then return 'p', 0 end
  if string.match(v, '^%d+$') then
    local n = tonumber(v)
    local d = n % 10
    if d == 1 then return 'a', (n - d) / 10 end
    if d == 2 then return 'd', (n - d) / 10 end
    return nil, 0
  end
  local m, n = string.match(v, '^([ad])(%d*)$')
  if not m then return nil, 0 end
  return m, tonumber(n) or 0
end
local function setstate(k, v, horizon)
  if redis.call('PTTL', k) > 0 then
    redis.call('SET', k, v, 'KEEPTTL')
  else
    redis.call('SET', k, v, 'PX', horizon)
  end
end
`

// scriptAccept: KEYS[1] state; ARGV[1] pending token. Sets Accepted ("1")
// keeping the TTL where the state is still the token. Returns 1 if set, else 0.
var scriptAccept = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], '1', 'KEEPTTL')
  return 1
end
return 0
`)

// scriptAcceptAll: KEYS the state keys; ARGV[i] the pending token of
// KEYS[i]. scriptAccept for every key in one run, instead of one run per key.
// A Cluster refuses it unless every key lies in one slot: it is used off
// Cluster only. Returns the number of keys set.
var scriptAcceptAll = redis.NewScript(`
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('SET', KEYS[i], '1', 'KEEPTTL')
    n = n + 1
  end
end
return n
`)

// scriptRelease: KEYS[1] state; ARGV[1] pending token. Deletes the state
// where it is still the token. Returns 1 if deleted, else 0.
var scriptRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Answers of scriptBegin other than a fencing number.
const (
	redisBeginDone = -1
	redisBeginBusy = -2
)

// scriptBegin: KEYS[1] state, KEYS[2] lock; ARGV[1] lock token, ARGV[2] lock
// TTL in ms, ARGV[3] "1" to force over done, ARGV[4] horizon in ms.
// Returns redisBeginDone, redisBeginBusy, or the new fencing number after writing
// Accepted with it ("<fence>1", keeping the state's TTL, or the horizon if it
// had none) and the lock.
var scriptBegin = redis.NewScript(luaParse + `
local m, fence = parse(redis.call('GET', KEYS[1]))
if not m then return redis.error_reply('ERR dedupe: state key holds no dedupe state') end
if m == 'd' and ARGV[3] ~= '1' then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
fence = fence + 1
setstate(KEYS[1], string.format('%d', fence * 10 + 1), ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return fence
`)

// scriptExtend: KEYS[1] lock; ARGV[1] lock token, ARGV[2] TTL in ms. Resets
// the lock's TTL where it still holds the token. Returns 1 if reset, else 0.
var scriptExtend = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// scriptFinish: KEYS[1] state, KEYS[2] lock; ARGV[1] lock token, ARGV[2] the
// lease's fencing number, ARGV[3] horizon in ms. Where the lock still holds
// the token, writes Done with the fence ("<fence>2", keeping the state's TTL,
// or the horizon if it had none) and deletes the lock. Returns 1 if done,
// else 0.
var scriptFinish = redis.NewScript(luaParse + `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local m, fence = parse(redis.call('GET', KEYS[1]))
local own = tonumber(ARGV[2])
if not m or fence < own then fence = own end
setstate(KEYS[1], string.format('%d', fence * 10 + 2), ARGV[3])
redis.call('DEL', KEYS[2])
return 1
`)

// scriptUnlock: KEYS[1] lock; ARGV[1] lock token. Deletes the lock where it
// still holds the token. Returns 1 if deleted, else 0.
var scriptUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// scriptLookup: KEYS[1] state, KEYS[2] lock. Returns the state value (nil if
// absent), its PTTL and whether the lock exists, read atomically.
var scriptLookup = redis.NewScript(`
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
`)

// scriptCall is one script run on one key, for runPipelined.
type scriptCall struct {
	keys []string
	args []any
}

// runPipelined runs s once per call in one pipeline (EVALSHA), so a batch
// costs one round trip. Calls that meet a server without the script
// (NOSCRIPT: first use, restart, SCRIPT FLUSH, failover) are sent again with
// EVAL in a second pipeline, which loads it. It returns one Cmd per call, in
// order, and the first error of any of them.
func runPipelined(ctx context.Context, c redis.UniversalClient, s *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	return runPipelinedThen(ctx, c, s, calls, nil)
}

// runPipelinedThen is runPipelined, with the commands then queues (when not
// nil) sent after the calls in the same pipeline; they are not sent again,
// and their errors are theirs, not runPipelinedThen's.
func runPipelinedThen(ctx context.Context, c redis.UniversalClient, s *redis.Script, calls []scriptCall, then func(redis.Pipeliner)) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, call := range calls {
			cmds[i] = s.EvalSha(ctx, p, call.keys, call.args...)
		}
		if then != nil {
			then(p)
		}
		return nil
	})
	var missing []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range missing {
				cmds[i] = s.Eval(ctx, p, calls[i].keys, calls[i].args...)
			}
			return nil
		})
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return cmds, err
		}
	}
	return cmds, nil
}

// isCrossSlot reports whether err says the keys of one command lie in
// several Cluster slots.
func isCrossSlot(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "CROSSSLOT")
}

// isNoScript reports whether err says the server does not have the script.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
