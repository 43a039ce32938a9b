{{/* The chart's name, truncated to the 63 characters a label value allows. */}}
{{- define "parallelrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: release-chart, or the release name when it already holds the chart's. */}}
{{- define "parallelrun.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "parallelrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parallelrun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "parallelrun.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "parallelrun.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: parallelrun
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "parallelrun.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parallelrun.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "parallelrun.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The scoring pods' default image: jobImage, else the operator's own image. */}}
{{- define "parallelrun.jobImage" -}}
{{- default (include "parallelrun.image" .) .Values.jobImage }}
{{- end }}

{{- define "parallelrun.peeringName" -}}
{{- default (include "parallelrun.fullname" .) .Values.peering.name }}
{{- end }}

{{/* Replicas above one take turns through kopf peering; one replica runs standalone. */}}
{{- define "parallelrun.peered" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* Rules for the namespaced resources: exactly the calls the operator makes
     (tests/chart/rbac_needs.py; tests/operator/test_operator_rbac.py records them). */}}
{{- define "parallelrun.namespacedRules" -}}
# kopf watches the three kinds and patches their finalizers and annotations. A PipelineRun creates a
# BatchInferenceJob per scoring step, a PipelineSchedule its PipelineRuns (get: adopt one made before a
# restart); a schedule deletes the runs beyond its history limits.
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs, pipelineruns]
  verbs: [get, list, watch, create, patch]
- apiGroups: [parallelrun.dev]
  resources: [pipelineruns]
  verbs: [delete]
- apiGroups: [parallelrun.dev]
  resources: [pipelineschedules]
  verbs: [list, watch, patch]
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs/status, pipelineschedules/status, pipelineruns/status]
  verbs: [patch]
# Not a call: the API server asks it of owner references with blockOwnerDeletion on the children.
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs/finalizers, pipelineschedules/finalizers, pipelineruns/finalizers]
  verbs: [update]
# Scoring, merge and step Jobs: created, watched, suspended (patch) when a run stops, adopted (get)
# after a restart. Kubernetes' garbage collector deletes them with their owner.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# A run's spec (created immutable), its code and its components (get).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* The Secret a resource names in spec.storage.secretRef: read one by one, never listed or copied. */}}
{{- define "parallelrun.secretsRule" -}}
# The Secret of spec.storage.secretRef, to plan and poll with its credentials; never listed or copied.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}

{{/* Rules for cluster-scoped resources: kopf discovers the CRDs it serves. */}}
{{- define "parallelrun.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{- define "parallelrun.peeringRule" -}}
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, patch]
{{- end }}
