-- POST /v1/search {"item_id": ..., "k": 10}, the item cycling through WRK_IDS.
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

wrk.headers["Content-Type"] = "application/json"  -- wrk.format(..., headers) would drop the key

local ids, n

function init(args)
  ids = common.lines(os.getenv("WRK_IDS"))
  n = thread_no * 7919
end

function request()
  n = n + 1
  local body = string.format('{"item_id": "%s", "k": 10}', ids[n % #ids + 1])
  return wrk.format("POST", "/v1/search", nil, body)
end
