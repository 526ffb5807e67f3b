{{- define "loyalty-consumer.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Pod names of a StatefulSet are <fullname>-<ordinal>: kept short enough for that. */}}
{{- define "loyalty-consumer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "loyalty-consumer.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
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

{{/* Deployment or StatefulSet: a StatefulSet by default under exactly-once, where the
member name (the pod name) is the transactional identity and must survive a
replacement so that the new pod fences the old one's open transaction at once. */}}
{{- define "loyalty-consumer.workloadKind" -}}
{{- if .Values.workload.kind -}}
{{- .Values.workload.kind -}}
{{- else if eq .Values.processingGuarantee "exactly-once" -}}
StatefulSet
{{- else -}}
Deployment
{{- end -}}
{{- end -}}

{{- define "loyalty-consumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "loyalty-consumer.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "loyalty-consumer.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart creates for the secrets given as values. */}}
{{- define "loyalty-consumer.createdSecretName" -}}
{{- printf "%s-webhook-secrets" (include "loyalty-consumer.fullname" .) -}}
{{- end -}}

{{/* Providers that have a secret configured, as a list. */}}
{{- define "loyalty-consumer.signedProviders" -}}
{{- $signed := list -}}
{{- range .Values.providers -}}
{{- $secret := get $.Values.webhookSecrets . | default dict -}}
{{- if or $secret.secretName $secret.value -}}
{{- $signed = append $signed . -}}
{{- end -}}
{{- end -}}
{{- toJson $signed -}}
{{- end -}}

{{/* The security contexts; on OpenShift its restricted SCC assigns the user, group and
fsGroup from the namespace's range and refuses pods that name their own. */}}
{{- define "loyalty-consumer.podSecurityContext" -}}
{{- $context := deepCopy .Values.podSecurityContext -}}
{{- if .Values.openshift.adaptSecurityContext -}}
{{- $context = omit $context "runAsUser" "runAsGroup" "fsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{- define "loyalty-consumer.containerSecurityContext" -}}
{{- $context := deepCopy .Values.containerSecurityContext -}}
{{- if .Values.openshift.adaptSecurityContext -}}
{{- $context = omit $context "runAsUser" "runAsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
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
{{- range .Values.providers -}}
{{- $secret := get $.Values.webhookSecrets . | default dict -}}
{{- if and (not (or $secret.secretName $secret.value)) (not (has . $.Values.unsignedProviders)) -}}
{{- fail (printf "webhookSecrets.%s: no signing secret for provider %s; set webhookSecrets.%s.secretName (or .value), or name it in unsignedProviders to accept its records unsigned" . . .) -}}
{{- end -}}
{{- if and $secret.secretName $secret.value -}}
{{- fail (printf "webhookSecrets.%s: give secretName or value, not both" .) -}}
{{- end -}}
{{- end -}}
{{- range keys .Values.webhookSecrets -}}
{{- if not (has . $.Values.providers) -}}
{{- fail (printf "webhookSecrets.%s: not a provider (providers: %s)" . (join ", " $.Values.providers)) -}}
{{- end -}}
{{- end -}}
{{- range .Values.unsignedProviders -}}
{{- if not (has . $.Values.providers) -}}
{{- fail (printf "unsignedProviders: %s is not a provider (providers: %s)" . (join ", " $.Values.providers)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaling.sasl.enabled .Values.autoscaling.triggerAuthenticationName -}}
{{- fail "autoscaling: give sasl.enabled (the chart makes the TriggerAuthentication) or triggerAuthenticationName, not both" -}}
{{- end -}}
{{- end -}}
