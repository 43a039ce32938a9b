-- Argo CD health of a BatchInferenceJob. Add it to argocd-cm (README.md, "On Kubernetes"):
--   resource.customizations.health.parallelrun.dev_BatchInferenceJob: |
--     <this file>
-- Succeeded is Healthy, Failed is Degraded with the operator's reason; before that,
-- Progressing with the phase and the progress (e.g. "Running: 812/1000 mini-batches").
local hs = {status = "Progressing", message = "waiting for the parallelrun operator"}
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = status.message or "succeeded"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  local reason = "Failed"
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Failed" and condition.status == "True" and condition.reason ~= nil then
        reason = condition.reason
      end
    end
  end
  hs.message = reason .. ": " .. (status.message or "")
else
  hs.message = status.phase
  if status.progressText ~= nil then
    hs.message = hs.message .. ": " .. status.progressText .. " mini-batches"
  end
  if status.message ~= nil then
    hs.message = hs.message .. " (" .. status.message .. ")"
  end
end
return hs
