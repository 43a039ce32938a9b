"""The kit every kind's controller is built on: the controller loop, the API client, children, conditions."""
