"""The wire format both sides share: body rules, what an output line means, OpenAI's batch output lines, schemas."""
