{{/* Names, labels and the pieces every workload shares. */}}

{{- define "netspectra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netspectra.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "netspectra.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netspectra.labels" -}}
helm.sh/chart: {{ include "netspectra.chart" . }}
app.kubernetes.io/name: {{ include "netspectra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: netspectra
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "netspectra.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netspectra.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "netspectra.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "netspectra.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "netspectra.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "netspectra.secretName" -}}
{{- default (printf "%s-secrets" (include "netspectra.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Pod annotations: config/secret checksums (roll the pods on change) and Prometheus scraping.
     (dict "ctx" $ "port" 9100 "extra" .Values.api.podAnnotations) */}}
{{- define "netspectra.podAnnotations" -}}
checksum/config: {{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
checksum/secret: {{ include (print .ctx.Template.BasePath "/secret.yaml") .ctx | sha256sum }}
{{- if .ctx.Values.ops.prometheusAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The environment deploy/config/netspectra.yaml expands. (dict "ctx" $ "opsPort" 9100) */}}
{{- define "netspectra.env" -}}
{{- $v := .ctx.Values -}}
- name: NETSPECTRA_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
- name: NETSPECTRA_OPS_LISTEN
  value: {{ printf "0.0.0.0:%v" .opsPort | quote }}
- name: NATS_URL
  value: {{ $v.nats.url | quote }}
- name: CLICKHOUSE_HOST
  value: {{ $v.clickhouse.host | quote }}
- name: CLICKHOUSE_PORT
  value: {{ $v.clickhouse.port | quote }}
- name: CLICKHOUSE_DATABASE
  value: {{ $v.clickhouse.database | quote }}
- name: CLICKHOUSE_USERNAME
  value: {{ $v.clickhouse.username | quote }}
- name: CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "netspectra.secretName" .ctx }}
      key: CLICKHOUSE_PASSWORD
- name: API_GRPC_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" $v.api.grpcPort | quote }}
- name: API_HTTP_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" $v.api.httpPort | quote }}
- name: AI_GRPC_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" $v.ai.grpcPort | quote }}
- name: ALERTER_AI_ANALYSIS_ENABLED
  value: {{ and $v.ai.enabled $v.ai.alertAnalysis | ternary "true" "false" | quote }}
- name: ALERTER_AI_SERVICE_ADDR
  value: {{ printf "%s-ai:%v" (include "netspectra.fullname" .ctx) $v.ai.grpcPort | quote }}
- name: ENGINE_NUM_WORKERS
  value: {{ $v.engine.numWorkers | quote }}
- name: SMTP_HOST
  value: {{ $v.smtp.host | quote }}
- name: SMTP_PORT
  value: {{ $v.smtp.port | quote }}
- name: SMTP_USERNAME
  value: {{ $v.smtp.username | quote }}
- name: SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "netspectra.secretName" .ctx }}
      key: SMTP_PASSWORD
- name: SMTP_FROM
  value: {{ $v.smtp.from | quote }}
- name: SMTP_TO
  value: {{ $v.smtp.to | quote }}
- name: PROBE_INTERFACE
  value: {{ $v.probe.interface | quote }}
- name: PROBE_BPF_FILTER
  value: {{ $v.probe.bpfFilter | quote }}
{{- end -}}

{{/* Liveness on /healthz and readiness on /readyz of the ops port. (dict "ctx" $ "port" 9100) */}}
{{- define "netspectra.healthProbes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  {{- toYaml .ctx.Values.healthProbes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  {{- toYaml .ctx.Values.healthProbes.readiness | nindent 2 }}
{{- end -}}

{{- define "netspectra.configVolume" -}}
- name: config
  configMap:
    name: {{ include "netspectra.fullname" . }}-config
{{- end -}}

{{- define "netspectra.configMount" -}}
- name: config
  mountPath: /etc/netspectra
  readOnly: true
{{- end -}}
