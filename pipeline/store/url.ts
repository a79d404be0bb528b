/**
 * `--out` values that name S3: `s3://bucket` or `s3://bucket/prefix`. Parsed here,
 * without the SDK, so config parsing (and `--help`) stays fast and a malformed URL
 * is a configuration error (exit 2) before anything is opened.
 */

/** A bucket and the key prefix under it ('' for the bucket's root; no slash at either end). */
export interface S3Location {
  readonly bucket: string;
  readonly prefix: string;
}

/** True when `out` is meant as an S3 URL (any `s3:` scheme, well formed or not). */
export function isS3Url(out: string): boolean {
  return /^s3:/i.test(out.trim());
}

/**
 * S3's rules for bucket names (general purpose buckets): 3 to 63 lowercase
 * letters, digits, dots and hyphens, starting and ending with a letter or digit,
 * no two dots in a row, not shaped like an IP address.
 */
function bucketProblem(bucket: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
    return `bucket name ${JSON.stringify(bucket)} is not valid (3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)`;
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(bucket)) return `bucket name ${JSON.stringify(bucket)} is not valid (shaped like an IP address)`;
  return undefined;
}

/**
 * The bucket and prefix of an `s3://` URL, or the problem with it as one phrase
 * (the caller names the flag). Slashes at either end of the prefix are dropped:
 * `s3://b/exports/` and `s3://b/exports` are the same dataset root.
 */
export function parseS3Url(out: string): S3Location | { readonly problem: string } {
  const m = /^s3:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(out.trim());
  if (!m) {
    if (/[?#]/.test(out)) return { problem: 'an S3 URL takes no query or fragment (use s3://bucket/prefix)' };
    return { problem: 'is not an S3 URL of the form s3://bucket/prefix' };
  }
  const bucket = m[1]!;
  if (bucket === '') return { problem: 'names no bucket (use s3://bucket/prefix)' };
  const bad = bucketProblem(bucket);
  if (bad) return { problem: bad };
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((segment) => segment === '') && prefix !== '') return { problem: 'has an empty path segment (//) in its prefix' };
  // Control characters make keys that most tools cannot show or type.
  if (/[\u0000-\u001f\u007f]/.test(prefix)) return { problem: 'has a control character in its prefix' };
  if (Buffer.byteLength(prefix) > 512) return { problem: 'has a prefix longer than 512 bytes (S3 keys hold at most 1024)' };
  return { bucket, prefix };
}
