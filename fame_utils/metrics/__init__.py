"""The paper's metrics: IoU@t, ROAD-Delete@p, EER and face Deletion/Insertion."""
