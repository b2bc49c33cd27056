-- Argo CD health check for tokens.apitoken.dev/ApiToken (docs/gitops.md).
-- Uses only the base library: argocd-cm scripts run without string, math or io.
local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end
-- health is what the script returns to Argo CD.
local function health(status, message)
  return {status = status, message = message}
end

-- Paused: the operator leaves the token alone and Ready keeps its last value.
local paused = condition("Paused")
if paused ~= nil and paused.status == "True" then
  local annotations = obj.metadata.annotations
  if annotations ~= nil and annotations["tokens.apitoken.dev/paused"] == "true" then
    return health("Suspended", paused.message or "Paused by the tokens.apitoken.dev/paused annotation")
  end
  return health("Progressing", "Resuming: the paused annotation was removed")
end

if obj.status == nil or obj.status.conditions == nil then
  return health("Progressing", "Waiting for the operator to report a status")
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return health("Progressing", "Waiting for the operator to observe generation " .. tostring(generation))
end

-- The first of these conditions that is True decides, with its message.
local decisive = {
  {type = "Stalled", status = "Degraded"},
  {type = "Reconciling", status = "Progressing"},
  {type = "Ready", status = "Healthy"},
}
for _, d in ipairs(decisive) do
  local c = condition(d.type)
  if c ~= nil and c.status == "True" then
    return health(d.status, c.message)
  end
end
local ready = condition("Ready")
if ready ~= nil and ready.message ~= nil then
  return health("Progressing", ready.message)
end
return health("Progressing", "Waiting for the Ready condition")
