import { createHash } from 'node:crypto';

/*
 * The driver's Lua scripts. Redis runs a script atomically: no other command runs in between, so a
 * reader sees a commit whole or not at all. A script is NOT rolled back when a command in it fails,
 * so every script checks everything first (key types, fields) and writes last, after the one command
 * that may still fail (INCR of the revision counter).
 */

/** A script and its SHA-1, for EVALSHA with a fallback to EVAL. */
export interface RedisScript {
  readonly lua: string;
  readonly sha: string;
}

const script = (lua: string): RedisScript => ({
  lua,
  sha: createHash('sha1').update(lua).digest('hex'),
});

/* Shared helper: the state of an item key and its index, or the reason it is bad data. */
const INSPECT = `
local function inspect(item, index)
  local it = redis.call('TYPE', index).ok
  if it ~= 'none' and it ~= 'set' then return nil, nil, nil, 'index', 'is a ' .. it .. ', not a set' end
  local t = redis.call('TYPE', item).ok
  if t == 'none' then return 0, false, false end
  if t ~= 'hash' then return nil, nil, nil, 'item', 'is a ' .. t .. ', not a hash' end
  local f = redis.call('HMGET', item, 'data', 'rev', 'by')
  if not f[1] then return nil, nil, nil, 'item', 'has no "data" field' end
  if not f[2] or not string.match(f[2], '^[1-9]%d*$') or string.len(f[2]) > 15 then
    return nil, nil, nil, 'item', 'has "rev" ' .. tostring(f[2]) .. ', not a positive integer'
  end
  return tonumber(f[2]), f[1], f[3]
end
`;

/**
 * The commit. KEYS[1]: revision counter; then, per change i: KEYS[2i] item, KEYS[2i+1] index.
 * ARGV: policy ('reject' | 'last-write-wins'), origin replica id, channel, n; then per change:
 * collection, id, op ('S' set | 'D' delete), expected revision (0 = absent), data.
 * Returns { revision or false, applied flags, conflicts (i, remote rev, remote data)…, bad (i, which,
 * reason)… }. A change whose stored version was written by this same replica (`by` = origin) is no
 * conflict: that is its own earlier commit whose answer was lost with the connection.
 */
export const COMMIT = script(`${INSPECT}
local policy, origin, channel, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local apply, conflicts, bad, any = {}, {}, {}, false
for i = 1, n do
  local b = 4 + (i - 1) * 5
  local op, expected = ARGV[b + 3], tonumber(ARGV[b + 4])
  local rev, data, by, which, problem = inspect(KEYS[2 * i], KEYS[2 * i + 1])
  if problem then
    table.insert(bad, i); table.insert(bad, which); table.insert(bad, problem)
    apply[i] = 0
  else
    local conflict = rev ~= expected and by ~= origin and not (op == 'D' and rev == 0)
    if conflict then
      table.insert(conflicts, i); table.insert(conflicts, rev); table.insert(conflicts, data)
    end
    if conflict and policy == 'reject' then apply[i] = 0 else apply[i] = 1; any = true end
  end
end
local revision = false
if any then
  revision = redis.call('INCR', KEYS[1])
  local notice = {}
  for i = 1, n do
    if apply[i] == 1 then
      local b = 4 + (i - 1) * 5
      if ARGV[b + 3] == 'D' then
        redis.call('DEL', KEYS[2 * i])
        redis.call('SREM', KEYS[2 * i + 1], ARGV[b + 2])
      else
        redis.call('HSET', KEYS[2 * i], 'data', ARGV[b + 5], 'rev', revision, 'by', origin)
        redis.call('SADD', KEYS[2 * i + 1], ARGV[b + 2])
      end
      table.insert(notice, { ARGV[b + 1], ARGV[b + 2], ARGV[b + 3] == 'D' })
    end
  end
  redis.call('PUBLISH', channel, cjson.encode({ o = origin, r = revision, c = notice }))
end
return { revision, apply, conflicts, bad }
`);

/**
 * One consistent snapshot of whole collections (the fallback of loadAll when commits keep racing
 * its chunked reads). KEYS[1]: revision counter; KEYS[1+j]: index of collection j. ARGV[j]: the item
 * key prefix of collection j. Returns { counter, per collection { index type, { id, type, data, rev }
 * … } }.
 */
export const SNAPSHOT = script(`
local out = { redis.call('GET', KEYS[1]) }
for j = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[j]).ok
  local entries = {}
  if t == 'set' then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[j])) do
      local key = ARGV[j - 1] .. id
      local it = redis.call('TYPE', key).ok
      table.insert(entries, id); table.insert(entries, it)
      if it == 'hash' then
        local f = redis.call('HMGET', key, 'data', 'rev')
        table.insert(entries, f[1]); table.insert(entries, f[2])
      else
        table.insert(entries, false); table.insert(entries, false)
      end
    end
  end
  table.insert(out, { t, entries })
end
return out
`);

/**
 * Copies a bad value aside, never touching the original. KEYS[1]: the value; KEYS[2]: the quarantine
 * set. ARGV[1]: quarantine key prefix; ARGV[2]: the value's key without the driver prefix. Returns the
 * copy's name (the same one for the same bytes: no duplicate copies), or false when the key is gone.
 */
export const QUARANTINE = script(`
local dump = redis.call('DUMP', KEYS[1])
if not dump then return false end
local dest = ARGV[1] .. string.sub(redis.sha1hex(dump), 1, 16) .. ':' .. ARGV[2]
if redis.call('EXISTS', dest) == 0 then
  redis.call('RESTORE', dest, 0, dump)
  redis.call('SADD', KEYS[2], dest)
end
return dest
`);

/**
 * Takes a lease. KEYS[1]: lease; KEYS[2]: fencing counter. ARGV: holder nonce, ttl ms. Returns the
 * fencing token, or false when it is held.
 */
export const LEASE_ACQUIRE = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
`);

/** Extends a lease if still held by this holder. KEYS[1]: lease; ARGV: value, ttl ms. 1 or 0. */
export const LEASE_RENEW = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

/** Removes a lease if still held by this holder. KEYS[1]: lease; ARGV[1]: value. 1 or 0. */
export const LEASE_RELEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);
