-- Argo CD health check for tokens.apitoken.dev/TokenBackend (docs/gitops.md).
-- Uses only the base library: argocd-cm scripts run without string, math or io.
local hs = {}
-- Ready=False reasons that need a change from the user; any other reason is retried.
local needsUser = {
  CredentialsInvalid = true,
  BackendUnauthorized = true,
  InsecureURL = true,
}
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to fetch the catalog"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif needsUser[ready.reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = ready.message
return hs
