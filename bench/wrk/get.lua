-- GET a path with {id} filled in from WRK_IDS (one id a line), cycling: WRK_PATH, e.g.
-- /v1/users/{id}/recommendations?k=10 or /api/item/{id}/neighbors?n=10.
package.path = os.getenv("WRK_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local ids, template, n

function init(args)
  ids = common.lines(os.getenv("WRK_IDS"))
  template = os.getenv("WRK_PATH")
  n = thread_no * 7919  -- threads start at different ids
end

function request()
  n = n + 1
  local path = template:gsub("{id}", ids[n % #ids + 1])
  return wrk.format("GET", path)
end
