"""The breaker's Redis Lua script, kept as a string so it ships inside the wheel.

(A ``.lua`` file next to this module would need package-data configuration in
pyproject.toml to be installed; a module constant needs none.)
"""

BREAKER_LUA = r"""
-- cxhealth circuit breaker: the whole read-modify-write of one host, atomically.
--
-- A port of tasks/breaker/machine.py (keep the two in step; the shared store
-- tests run the same scenarios against both). Redis runs a script to the end
-- before serving any other command, so no other caller can interleave between
-- the HGETALL and the write: each transition is computed, and returned, once.
-- Time comes from the server (TIME), so workers' clocks do not matter.
--
-- KEYS[1]  the host's hash, hash-tagged "<prefix>:{<host>}" (Redis Cluster safe:
--          the script touches this one key only)
-- ARGV[1]  op: admit | failure | success | release | amend | override | status
-- ARGV[2]  seconds added to the server time (0 in production; tests move time)
-- ARGV[3..7] threshold, window_s, open_s, max_open_s, lease_s
-- ARGV[8]  admit: the new lease token; failure: the summary JSON;
--          override: "forced_open" | "disabled" | "" (clear)
-- ARGV[9]  failure/success: the caller's epoch ("" = unknown); override: reason
-- ARGV[10] failure/success/release: the caller's lease or cold-start slot ("" = none)
--          (release: ARGV[8] is the slot)
--
-- Timestamps travel as "%.6f" strings: a Lua number in a reply is truncated to
-- an integer.

if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 5

local key = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local window_s = tonumber(ARGV[4])
local open_s = tonumber(ARGV[5])
local max_open_s = tonumber(ARGV[6])
local lease_s = tonumber(ARGV[7])

local function num(v) if v then return tonumber(v) end return nil end
local function fmt(x) if x then return string.format('%.6f', x) end return false end
local function opt(v) if v and v ~= '' then return v end return nil end

-- load the record (absent fields = the pristine CLOSED record)
local h = redis.call('HGETALL', key)
local r = {}
for i = 1, #h, 2 do r[h[i]] = h[i + 1] end
local state = r.state or 'closed'
local failures = {}
if r.failures then
  for ts in string.gmatch(r.failures, '[^,]+') do failures[#failures + 1] = tonumber(ts) end
end
-- a record that cannot be read is an error for this host only (never guessed as CLOSED)
local function unreadable(name) error('cxhealth breaker: unreadable record field ' .. name) end
if r.state and r.state ~= 'closed' and r.state ~= 'open' and r.state ~= 'half_open' then unreadable('state') end
for _, name in ipairs({'trips', 'reopen_at', 'lease_expires', 'epoch', 'last_success'}) do
  if r[name] and not tonumber(r[name]) then unreadable(name) end
end
if r.failures then
  for ts in string.gmatch(r.failures, '[^,]+') do if not tonumber(ts) then unreadable('failures') end end
end
local trips = num(r.trips) or 0
local reopen_at = num(r.reopen_at)
local lease = r.lease
local lease_expires = num(r.lease_expires)
local last_failure = r.last_failure
local override = r.override
local override_reason = r.override_reason
local epoch = num(r.epoch) or 0
local last_success = num(r.last_success)
-- cold-start slots: "token=expires,token=expires"
local inflight = {}
if r.inflight then
  for tok, exp in string.gmatch(r.inflight, '([^,=]+)=([^,]+)') do
    if not tonumber(exp) then unreadable('inflight') end
    inflight[#inflight + 1] = {tok, tonumber(exp)}
  end
end
local function live_slots(except)
  local kept = {}
  for i = 1, #inflight do
    if inflight[i][2] > now and inflight[i][1] ~= except then kept[#kept + 1] = inflight[i] end
  end
  return kept
end

local function save()
  local parts = {}
  for i = 1, #failures do parts[i] = string.format('%.6f', failures[i]) end
  local f = {'state', state, 'trips', tostring(trips), 'epoch', tostring(epoch),
             'failures', table.concat(parts, ',')}
  local function put(name, v) if v then f[#f + 1] = name; f[#f + 1] = v end end
  put('reopen_at', fmt(reopen_at))
  put('lease', lease)
  put('lease_expires', fmt(lease_expires))
  put('last_failure', last_failure)
  put('override', override)
  put('override_reason', override_reason)
  put('last_success', fmt(last_success))
  if #inflight > 0 then
    local slots = {}
    for i = 1, #inflight do slots[i] = inflight[i][1] .. '=' .. string.format('%.6f', inflight[i][2]) end
    put('inflight', table.concat(slots, ','))
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(f))
end

local function open_duration(n)
  local exponent = math.min(math.max(n, 1) - 1, 60)
  return math.min(open_s * (2 ^ exponent), max_open_s)
end

-- reply shapes:
-- admit:   {admitted, state, reopen_at, is_probe, lease, last_failure, override, reason, epoch,
--           wait, note_success}
-- failure/success: {kind, at, reopen_at, summary, trips} or {} when nothing happened
-- status:  {state, failures_in_window, reopen_at, trips, override, reason,
--           last_failure, lease_expires, epoch, now}
local function decision(admitted, st, at, is_probe, tok)
  return {admitted, st, fmt(at), is_probe, tok or false, last_failure or false,
          override or false, override_reason or false, tostring(epoch), 0, 0}
end

if op == 'admit' then
  if override == 'disabled' then
    return {1, 'closed', false, 0, false, false, override, override_reason or false, tostring(epoch), 0, 0}
  end
  if override == 'forced_open' then
    return decision(0, 'open', nil, 0, nil)
  end
  if state == 'closed' then
    if last_success and now - last_success <= window_s then
      local stale = 0
      if now - last_success > window_s / 2 then stale = 1 end
      return {1, 'closed', false, 0, false, false, false, false, tostring(epoch), 0, stale}
    end
    local live = live_slots(nil)
    local in_window = 0
    for i = 1, #failures do
      if now - failures[i] <= window_s then in_window = in_window + 1 end
    end
    local allowed = math.max(threshold - in_window, 1)
    if #live >= allowed then
      local earliest = live[1][2]
      for i = 2, #live do if live[i][2] < earliest then earliest = live[i][2] end end
      return {0, 'closed', fmt(earliest), 0, false, false, false, false, tostring(epoch), 1, 0}
    end
    live[#live + 1] = {ARGV[8], now + lease_s}
    inflight = live
    save()
    return {1, 'closed', false, 0, ARGV[8], false, false, false, tostring(epoch), 0, 1}
  end
  if state == 'open' and reopen_at and now < reopen_at then
    return decision(0, 'open', reopen_at, 0, nil)
  end
  if state == 'half_open' and lease_expires and now < lease_expires then
    return decision(0, 'half_open', lease_expires, 0, nil)
  end
  state = 'half_open'
  lease = ARGV[8]
  lease_expires = now + lease_s
  save()
  return decision(1, 'half_open', nil, 1, lease)

elseif op == 'failure' then
  local caller_epoch = num(opt(ARGV[9]))
  local caller_lease = opt(ARGV[10])
  if override == 'disabled' then return {} end
  if state == 'closed' then
    if caller_epoch and caller_epoch ~= epoch then return {} end
    local kept = {}
    for i = 1, #failures do
      if now - failures[i] <= window_s then kept[#kept + 1] = failures[i] end
    end
    kept[#kept + 1] = now
    failures = kept
    inflight = live_slots(caller_lease)
    if #failures < threshold then last_failure = ARGV[8]; save(); return {} end
    trips = trips + 1
    reopen_at = now + open_duration(trips)
    state = 'open'; failures = {}; lease = nil; lease_expires = nil; inflight = {}
    last_failure = ARGV[8]; epoch = epoch + 1
    save()
    return {'opened', fmt(now), fmt(reopen_at), last_failure, tostring(trips)}
  end
  if state == 'half_open' and caller_lease and caller_lease == lease then
    trips = trips + 1
    reopen_at = now + open_duration(trips)
    state = 'open'; lease = nil; lease_expires = nil; last_failure = ARGV[8]
    save()
    return {'reopened', fmt(now), fmt(reopen_at), last_failure, tostring(trips)}
  end
  return {}

elseif op == 'success' then
  local caller_lease = opt(ARGV[10])
  if state == 'half_open' and caller_lease and caller_lease == lease then
    local resolved, n = last_failure, trips
    state = 'closed'; failures = {}; trips = 0; reopen_at = nil; lease = nil
    lease_expires = nil; last_failure = nil; epoch = epoch + 1
    last_success = now; inflight = {}
    save()
    return {'closed', fmt(now), false, resolved or false, tostring(n)}
  end
  local caller_epoch = num(opt(ARGV[9]))
  if state == 'closed' and (caller_epoch == nil or caller_epoch == epoch) then
    last_success = now
    inflight = live_slots(caller_lease)
    save()
  end
  return {}

elseif op == 'release' then
  local slot = opt(ARGV[8])
  local found = false
  for i = 1, #inflight do if inflight[i][1] == slot then found = true end end
  if found then inflight = live_slots(slot); save() end
  return {}

elseif op == 'amend' then
  -- machine.amend_failure: the whole diagnosis' verdict replaces this check's early one (compare-and-set)
  if last_failure and last_failure == ARGV[8] and ARGV[8] ~= ARGV[9] then
    last_failure = ARGV[9]
    save()
  end
  return {}

elseif op == 'override' then
  override = opt(ARGV[8])
  if override then override_reason = opt(ARGV[9]) else override_reason = nil end
  save()
  return {'ok'}

elseif op == 'status' then
  local in_window = 0
  for i = 1, #failures do
    if now - failures[i] <= window_s then in_window = in_window + 1 end
  end
  return {state, in_window, fmt(reopen_at), tostring(trips), override or false,
          override_reason or false, last_failure or false, fmt(lease_expires),
          tostring(epoch), fmt(now)}
end

return redis.error_reply('cxhealth breaker: unknown op ' .. tostring(op))
"""
