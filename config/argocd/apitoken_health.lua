-- Argo CD health check for tokens.apitoken.dev/ApiToken (docs/gitops.md).
-- Uses only the base library: argocd-cm scripts run without string, math or io.
local hs = {}
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

-- Paused: the operator leaves the token alone and Ready keeps its last value.
local paused = condition("Paused")
if paused ~= nil and paused.status == "True" then
  local annotations = obj.metadata.annotations
  if annotations ~= nil and annotations["tokens.apitoken.dev/paused"] == "true" then
    hs.status = "Suspended"
    hs.message = paused.message or "Paused by the tokens.apitoken.dev/paused annotation"
    return hs
  end
  hs.status = "Progressing"
  hs.message = "Resuming: the paused annotation was removed"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the Ready condition"
end
return hs
