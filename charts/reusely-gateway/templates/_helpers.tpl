{{/*
Names and labels live here and only here.
*/}}

{{/* Chart name, overridable. */}}
{{- define "reusely-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name plus chart name, unless the release
name already contains the chart name. Truncated to 63 chars (DNS label).
*/}}
{{- define "reusely-gateway.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "reusely-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name + instance only (immutable on a Deployment). */}}
{{- define "reusely-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reusely-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels for every object. */}}
{{- define "reusely-gateway.labels" -}}
helm.sh/chart: {{ include "reusely-gateway.chart" . }}
{{ include "reusely-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reusely-gateway
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "reusely-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reusely-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: digest wins over tag; tag defaults to appVersion. */}}
{{- define "reusely-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the policy ConfigMap is mounted, and the file GATEWAY_CONFIG names. */}}
{{- define "reusely-gateway.configDir" -}}/etc/reusely-gateway{{- end }}
{{- define "reusely-gateway.configPath" -}}{{ include "reusely-gateway.configDir" . }}/gateway.yaml{{- end }}

{{/* True (non-empty) when a shared Redis is configured. */}}
{{- define "reusely-gateway.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{- end }}
{{- end }}

{{/*
Refuse configurations that would silently count rate limits per process:
without Redis each pod (and each worker in a pod) keeps its own counters, so
"5/hour per email" would become 5/hour per process.
*/}}
{{- define "reusely-gateway.validate" -}}
{{- if not (include "reusely-gateway.hasRedis" .) }}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- fail "reusely-gateway: replicaCount > 1 or autoscaling.enabled needs a shared Redis for rate limits: set redis.url or redis.existingSecret (without it every replica counts limits on its own, so 5/hour per email becomes 5/hour per pod)" }}
{{- end }}
{{- if gt (int .Values.workers) 1 }}
{{- fail "reusely-gateway: workers > 1 needs a shared Redis for rate limits: set redis.url or redis.existingSecret, or keep workers: 1 (without it every worker process counts limits on its own)" }}
{{- end }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "reusely-gateway: set only one of redis.url and redis.existingSecret" }}
{{- end }}
{{- end }}

{{/*
The Service label whose value becomes Prometheus' `job` (ServiceMonitor
jobLabel): app.kubernetes.io/name, i.e. job="reusely-gateway", which the alert
rules and the dashboard select on.
*/}}
{{- define "reusely-gateway.jobLabelKey" -}}app.kubernetes.io/name{{- end }}

{{/*
The HMAC key hiding emails and phones in Redis (GATEWAY_LIMIT_KEY_SECRET_FILE) is
always a dedicated secret. "userLimitKey" is non-empty when the user's credentials
Secret holds it (credentials.existingSecret and credentials.keys.limitKeySecret);
otherwise the chart keeps one of its own in the Secret named by "limitKeySecretName".
*/}}
{{- define "reusely-gateway.userLimitKey" -}}
{{- if and .Values.credentials.existingSecret .Values.credentials.keys.limitKeySecret }}true{{- end }}
{{- end }}
{{- define "reusely-gateway.limitKeySecretName" -}}
{{- printf "%s-limit-key" (include "reusely-gateway.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}
{{- define "reusely-gateway.limitKeyMountPath" -}}/var/run/secrets/reusely-limit-key{{- end }}
{{- define "reusely-gateway.limitKeyFile" -}}
{{- if include "reusely-gateway.userLimitKey" . }}
{{- printf "%s/%s" .Values.credentials.mountPath .Values.credentials.keys.limitKeySecret }}
{{- else }}
{{- printf "%s/limit-key-secret" (include "reusely-gateway.limitKeyMountPath" .) }}
{{- end }}
{{- end }}
