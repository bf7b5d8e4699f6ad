-- POST /v1/events (WRK_API=native) or /api/feedback (WRK_API=gorse): WRK_BATCH events per
-- request (native and 1: one event object; else a list), each one new: a native event carries
-- an event id no other request uses, a Gorse feedback the time it arrives.
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

wrk.headers["Content-Type"] = "application/json"  -- wrk.format(..., headers) would drop the key

local ids, batch, run, gorse, n

function init(args)
  ids = common.lines(os.getenv("WRK_IDS"))
  batch = tonumber(os.getenv("WRK_BATCH"))
  run = os.getenv("WRK_RUN")  -- distinct per wrk run: reruns insert too
  gorse = os.getenv("WRK_API") == "gorse"
  n = 0
end

local function event()
  n = n + 1
  local item = ids[n % #ids + 1]
  if gorse then
    return string.format('{"FeedbackType": "view", "UserId": "bench-%d", "ItemId": "%s"}', n % 500, item)
  end
  return string.format('{"user_id": "bench-%d", "item_id": "%s", "type": "view", "event_id": "%s-%d-%d"}',
                       n % 500, item, run, thread_no, n)
end

function request()
  local body
  if batch == 1 and not gorse then
    body = event()
  else
    local events = {}
    for i = 1, batch do events[i] = event() end
    body = "[" .. table.concat(events, ", ") .. "]"
  end
  return wrk.format("POST", gorse and "/api/feedback" or "/v1/events", nil, body)
end
