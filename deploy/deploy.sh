#!/usr/bin/env bash
# Deploy Stagecoach itself to AWS (docs/deploy.md).
#
#   deploy/deploy.sh package   chalice package into out/ (offline, no AWS account needed)
#   deploy/deploy.sh           package, then `aws cloudformation package` + `deploy`
#
# Environment: STACK_NAME (stagecoach), AWS_REGION / AWS_DEFAULT_REGION / AWS_PROFILE,
# PACKAGE_BUCKET (default stagecoach-packages-ACCOUNT-REGION, created if missing),
# PARAMETER_OVERRIDES (e.g. "StackNamePrefix=acme- LogRetentionDays=90"), VENV (.venv).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
OUT=out
STACK_NAME="${STACK_NAME:-stagecoach}"

die() {
    echo "deploy: $*" >&2
    exit 1
}

package() {
    # chalice package needs a region only to render ARNs; the stack's region replaces it.
    export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
    [ -x "$BIN/chalice" ] || die "no $BIN/chalice; run 'make test' (or create the venv) first"
    rm -rf "$OUT"
    "$BIN/chalice" package --stage prod --merge-template deploy/template.yaml "$OUT"
    # DefinitionUri ../statemachines/release.asl.json is relative to out/sam.yaml.
    [ -f "$OUT/sam.yaml" ] || die "chalice package wrote no $OUT/sam.yaml"
    echo "packaged: $OUT/sam.yaml, $OUT/deployment.zip"
}

if [ "${1:-}" = "package" ]; then
    package
    exit 0
fi
[ $# -eq 0 ] || die "usage: deploy/deploy.sh [package]"

command -v aws >/dev/null 2>&1 || die "the AWS CLI v2 ('aws') is not installed: https://docs.aws.amazon.com/cli/"

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
[ -n "$REGION" ] || die "no AWS region: set AWS_REGION (or 'aws configure set region ...')"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

if ! IDENTITY="$(aws sts get-caller-identity --query '[Account, Arn]' --output text 2>&1)"; then
    die "no usable AWS credentials (aws sts get-caller-identity failed):
  $IDENTITY
Set AWS_PROFILE, run 'aws sso login', or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
fi
ACCOUNT="$(echo "$IDENTITY" | cut -f1)"
echo "deploying stack $STACK_NAME to account $ACCOUNT, region $REGION as $(echo "$IDENTITY" | cut -f2)"

package
"$BIN/cfn-lint" "$OUT/sam.yaml" || die "cfn-lint found errors in $OUT/sam.yaml"

BUCKET="${PACKAGE_BUCKET:-stagecoach-packages-$ACCOUNT-$REGION}"
if ! aws s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
    echo "creating packaging bucket $BUCKET"
    if [ "$REGION" = "us-east-1" ]; then
        aws s3api create-bucket --bucket "$BUCKET" >/dev/null
    else
        aws s3api create-bucket --bucket "$BUCKET" \
            --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
    fi
    aws s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    aws s3api put-bucket-encryption --bucket "$BUCKET" --server-side-encryption-configuration \
        '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
fi

# Uploads deployment.zip and statemachines/release.asl.json, rewriting CodeUri/DefinitionUri.
aws cloudformation package \
    --template-file "$OUT/sam.yaml" \
    --s3-bucket "$BUCKET" \
    --s3-prefix "$STACK_NAME" \
    --output-template-file "$OUT/packaged.yaml"

# shellcheck disable=SC2086  # PARAMETER_OVERRIDES is a list of Key=Value words
aws cloudformation deploy \
    --template-file "$OUT/packaged.yaml" \
    --stack-name "$STACK_NAME" \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
    --no-fail-on-empty-changeset \
    ${PARAMETER_OVERRIDES:+--parameter-overrides $PARAMETER_OVERRIDES}

output() {
    aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
API_URL="$(output ApiUrl)"
cat <<EOF

Stagecoach is deployed.
  API URL:                  $API_URL
  default CloudFormation role for stage deploys: $(output DefaultCloudFormationRoleArn)
  stage role_arn values must match: $(output StageRoleArnPattern)

Use it:  export STAGECOACH_URL=$API_URL
  (every route except /health and /webhooks/* needs SigV4-signed requests, service execute-api)

Register a GitHub webhook for a stack:
  1. Create the stack (POST /stacks); keep the webhook secret it returns (shown once;
     POST /stacks/{stack_id}/webhook/rotate makes a new one).
  2. GitHub > the repository > Settings > Webhooks > Add webhook:
       Payload URL:  ${API_URL}webhooks/github/{stack_id}
       Content type: application/json
       Secret:       the webhook secret
       Events:       Just the push event
  3. Let CodeBuild clone the repository (once per account and region), e.g. with a token:
       aws codebuild import-source-credentials --server-type GITHUB \\
         --auth-type PERSONAL_ACCESS_TOKEN --token <github token with repo scope>
EOF
