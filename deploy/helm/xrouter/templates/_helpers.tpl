{{/* Names and labels. */}}
{{- define "xrouter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "xrouter.fullname" -}}
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

{{- define "xrouter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "xrouter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xrouter
{{- end }}

{{/* Selector labels of one component: include with (list $ "gateway"). */}}
{{- define "xrouter.selectorLabels" -}}
{{- $root := index . 0 }}
app.kubernetes.io/name: {{ include "xrouter.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "xrouter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "xrouter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "xrouter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "xrouter.catalogConfigMap" -}}
{{- default (printf "%s-catalog" (include "xrouter.fullname" .)) .Values.catalog.existingConfigMap }}
{{- end }}

{{- define "xrouter.hasCatalog" -}}
{{- if or .Values.catalog.existingConfigMap .Values.catalog.content }}true{{ end }}
{{- end }}

{{/* An optional env var from the main Secret: (list $ "ENV_NAME" "keyName"). */}}
{{- define "xrouter.optionalSecretEnv" -}}
{{- $root := index . 0 }}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.existingSecret }}
      key: {{ index $root.Values.secrets.keys (index . 2) }}
      optional: true
{{- end }}

{{/*
Environment shared by every XRouter container. Inline (no ConfigMap) so the
pre-install migrations hook, which runs before any chart object exists,
sees the same settings as the pods.
*/}}
{{- define "xrouter.env" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: ALLOWED_HOSTS
  value: {{ join "," (concat .Values.config.allowedHosts (list "localhost" "$(POD_IP)")) | quote }}
{{- with .Values.config.csrfTrustedOrigins }}
- name: CSRF_TRUSTED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
- name: XROUTER_BEHIND_TLS_PROXY
  value: {{ .Values.config.behindTlsProxy | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: SECRET_KEY_FILE
  value: /etc/xrouter/secrets/SECRET_KEY
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.keys.databaseUrl }}
{{ include "xrouter.optionalSecretEnv" (list . "REDIS_URL" "redisUrl") }}
{{ include "xrouter.optionalSecretEnv" (list . "CELERY_BROKER_URL" "celeryBrokerUrl") }}
{{ include "xrouter.optionalSecretEnv" (list . "CELERY_RESULT_BACKEND" "celeryResultBackend") }}
{{ include "xrouter.optionalSecretEnv" (list . "SECRET_KEY_FALLBACKS" "secretKeyFallbacks") }}
{{ include "xrouter.optionalSecretEnv" (list . "XROUTER_METRICS_TOKEN" "metricsToken") }}
{{- range .Values.secrets.providers.names }}
- name: {{ printf "%s_FILE" . }}
  value: {{ printf "/etc/xrouter/providers/%s" . }}
{{- end }}
{{- range $name, $value := .Values.config.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "xrouter.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: /etc/xrouter/secrets
  readOnly: true
{{- if .Values.secrets.providers.existingSecret }}
- name: providers
  mountPath: /etc/xrouter/providers
  readOnly: true
{{- end }}
{{- if or .Values.caBundle.existingSecret .Values.caBundle.existingConfigMap }}
- name: certs
  mountPath: /etc/xrouter/certs
  readOnly: true
{{- end }}
{{- end }}

{{- define "xrouter.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.gateway.tmpSizeLimit }}
- name: secrets
  secret:
    secretName: {{ .Values.secrets.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secrets.keys.secretKey }}
        path: SECRET_KEY
{{- if .Values.secrets.providers.existingSecret }}
- name: providers
  secret:
    secretName: {{ .Values.secrets.providers.existingSecret }}
    defaultMode: 0440
    items:
      {{- range .Values.secrets.providers.names }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- if .Values.caBundle.existingSecret }}
- name: certs
  secret:
    secretName: {{ .Values.caBundle.existingSecret }}
    defaultMode: 0444
{{- else if .Values.caBundle.existingConfigMap }}
- name: certs
  configMap:
    name: {{ .Values.caBundle.existingConfigMap }}
{{- end }}
{{- end }}

{{- define "xrouter.podSpecCommon" -}}
serviceAccountName: {{ include "xrouter.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
