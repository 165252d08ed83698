--[[
rspamd on the primary: mail drained from the holdfast backup MX is tagged,
never refused.  Loaded from rspamd.local.lua (user-patches.sh adds the
dofile line, in DMS and when plain-postfix.sh runs it).

Why: holdfast sends no bounces, so a reject from the primary parks real
mail (a false positive) in the backup's dead/ where nobody reads it.
Spam that came through the backup is tagged (add header) and folded to
Junk like any other.

Why Lua and not a settings.conf rule: the GTUBE test pattern is a forced
action that rspamd sets while it parses the message, before any settings
rule is applied, and it then skips every module, settings included
(rspamd 3.4 and later; newer releases also have options
gtube_patterns, global only).  A connection filter runs before the
message is parsed: disabling the reject action there makes rspamd skip
the forced reject, and GTUBE from the backup is turned into a forced
"add header" instead.  Other forced actions (DMARC policy, antivirus,
force_actions) run later and respect the disabled actions.

The backup is recognised by the address of the connection Postfix
reports (the PROXY v2 source, i.e. the backup's /32), before
external_relay.conf replaces it with the original client's.
]]--

local ucl = require "ucl"
local lua_maps = require "lua_maps"
local rspamd_logger = require "rspamd_logger"

-- The holdfast backup MX's public address (holdfast.conf [primary] source).
local backup = lua_maps.map_add_from_ucl({ "203.0.113.25/32" }, 'radix',
    'holdfast backup MX')

-- GTUBE's reject pattern (rspamd checks text parts up to 8 KB for it).
local gtube = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

rspamd_config:register_symbol({
  name = 'HOLDFAST_DRAIN',
  type = 'connfilter',
  score = 0.0,
  description = 'Drained from the holdfast backup MX: tag, never reject',
  group = 'policies',
  callback = function(task)
    local ip = task:get_from_ip()
    if not (ip and ip:is_valid() and backup:get_key(ip)) then
      return false
    end
    task:set_settings({ actions = {
      reject = ucl.null, ['soft reject'] = ucl.null, greylist = ucl.null,
    } })
    local content = task:get_content()
    if content and content:find(gtube) then
      task:set_pre_result('add header', 'GTUBE from the holdfast backup MX',
          'holdfast_drain')
    end
    rspamd_logger.infox(task, 'holdfast backup MX: reject disabled')
    return true
  end,
})
