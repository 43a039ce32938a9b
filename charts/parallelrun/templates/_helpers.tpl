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

{{/* Rules for the namespaced resources the operator reads and writes. */}}
{{- define "parallelrun.namespacedRules" -}}
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs, pipelineschedules, pipelineruns]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs/status, pipelineschedules/status, pipelineruns/status]
  verbs: [get, update, patch]
# Owner references with blockOwnerDeletion on the Jobs and runs it creates.
- apiGroups: [parallelrun.dev]
  resources: [batchinferencejobs/finalizers, pipelineschedules/finalizers, pipelineruns/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, update, patch, delete]
# PipelineSchedule: the runs it creates, adopts (get), watches and prunes.
- apiGroups: [parallelrun.dev]
  resources: [pipelineruns]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
# Read to plan a job with its spec.storage.secretRef; never listed or copied.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}

{{/* Rules for cluster-scoped resources: kopf discovers the CRDs it serves. */}}
{{- define "parallelrun.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}

{{- define "parallelrun.peeringRule" -}}
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, patch]
{{- end }}
