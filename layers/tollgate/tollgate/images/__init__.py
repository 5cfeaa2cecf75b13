"""Images (S7): asynchronous jobs on SQS, batches, assets in S3, deduplication, colour analysis."""
