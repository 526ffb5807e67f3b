{{- define "loyalty-consumer.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "loyalty-consumer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "loyalty-consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loyalty-consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "loyalty-consumer.labels" -}}
{{ include "loyalty-consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "loyalty-consumer.secretName" -}}
{{- .Values.webhookSecrets.existingSecret | default (printf "%s-webhook-secrets" (include "loyalty-consumer.fullname" .)) -}}
{{- end -}}

{{- define "loyalty-consumer.checks" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDeadlineSeconds) -}}
{{- fail "terminationGracePeriodSeconds must be above shutdownDeadlineSeconds: otherwise a clean shutdown is cut short by SIGKILL" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicaCount) (int .Values.kafka.rawTopicPartitions)) -}}
{{- fail "autoscaling.maxReplicaCount must not exceed kafka.rawTopicPartitions: members beyond the partition count get no partition and idle" -}}
{{- end -}}
{{- if not (has .Values.processingGuarantee (list "at-least-once" "exactly-once")) -}}
{{- fail "processingGuarantee must be at-least-once or exactly-once" -}}
{{- end -}}
{{- end -}}
