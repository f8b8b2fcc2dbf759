"""Delivery of actions to vendors: send the adapters' requests with rate limits and retries, and
turn every (action, destination) into a final outcome: delivered or dead-lettered."""
