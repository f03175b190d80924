"""What a viewer process knows of each run, folded once from the messages and shared by every
session: curve columns and the latest of everything else (:mod:`.state`), and what one
session has been sent of it (:mod:`.columns`). Nothing here draws: the panels render."""
