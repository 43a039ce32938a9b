-- Argo CD health of a BatchInferenceJob, a PipelineRun and a PipelineSchedule. Add it to
-- argocd-cm (README.md, "On Kubernetes") once per kind:
--   resource.customizations.health.parallelrun.dev_BatchInferenceJob: |
--     <this file>
--   resource.customizations.health.parallelrun.dev_PipelineRun: |
--     <this file>
--   resource.customizations.health.parallelrun.dev_PipelineSchedule: |
--     <this file>
-- Succeeded is Healthy, Failed is Degraded with the operator's reason; before that,
-- Progressing with the phase and the progress (e.g. "Running: 812/1000 mini-batches",
-- "Running: 1/3 steps").
local hs = {status = "Progressing", message = "waiting for the parallelrun operator"}
local status = obj.status
-- PipelineSchedule:
-- Healthy when Ready with its next run, Suspended when suspended, Degraded when the spec is invalid.
if obj.kind == "PipelineSchedule" then
  if status == nil or status.conditions == nil then
    return hs
  end
  if obj.metadata.generation ~= nil and status.observedGeneration ~= nil
      and status.observedGeneration < obj.metadata.generation then
    hs.message = "the operator has not seen the latest spec yet"
    return hs
  end
  local by_type = {}
  for _, condition in ipairs(status.conditions) do
    by_type[condition.type] = condition
  end
  if by_type.InvalidSchedule ~= nil and by_type.InvalidSchedule.status == "True" then
    hs.status = "Degraded"
    hs.message = "InvalidSchedule: " .. (by_type.InvalidSchedule.message or "")
  elseif by_type.Suspended ~= nil and by_type.Suspended.status == "True" then
    hs.status = "Suspended"
    hs.message = by_type.Suspended.message or "suspended"
  elseif by_type.Ready ~= nil and by_type.Ready.status == "True" then
    hs.status = "Healthy"
    hs.message = by_type.Ready.message or "scheduled"
  end
  return hs
end
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
    local unit = " mini-batches"
    if obj.kind == "PipelineRun" then
      unit = " steps"
    end
    hs.message = hs.message .. ": " .. status.progressText .. unit
  end
  if status.message ~= nil then
    hs.message = hs.message .. " (" .. status.message .. ")"
  end
end
return hs
